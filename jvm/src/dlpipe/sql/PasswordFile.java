package dlpipe.sql;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.GeneralSecurityException;
import java.security.MessageDigest;
import java.util.Base64;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;

import javax.crypto.SecretKeyFactory;
import javax.crypto.spec.PBEKeySpec;
import javax.security.sasl.AuthenticationException;

import org.apache.hive.service.auth.PasswdAuthenticationProvider;
import org.apache.hive.service.cli.session.SessionManager;

/**
 * The Thrift server's logins ({@code hive.server2.authentication=CUSTOM}) from a file of {@code user:hash} lines,
 * each hash {@code pbkdf2_sha256$<iterations>$<salt, base64>$<hash, base64>} (written by
 * {@code python -m dlpipe.pipelines.sql_auth}). The file is the Java system property {@value #SETTING}; it is read
 * at every login, so a user added or removed counts from the next one.
 *
 * <p>A user name that is not in the file costs the same hashing as a wrong password, so that the time of a refusal
 * does not tell which users exist. After {@value #ATTEMPTS} failed logins in a row (default 5) for one user name,
 * or {@value #PER_ADDRESS} times as many from one client address ({@link ClientAddress}; many users may share an
 * address), every login of that name or from that address is refused for {@value #LOCKOUT} seconds (default 60),
 * the right password too. A login that succeeds starts the counts of its user and address again.
 */
public final class PasswordFile implements PasswdAuthenticationProvider {
    public static final String SETTING = "dlpipe.sql.passwordFile";
    public static final String ATTEMPTS = "dlpipe.sql.loginAttempts";
    public static final String LOCKOUT = "dlpipe.sql.lockoutSeconds";
    static final int PER_ADDRESS = 4;
    /** Failure counts kept before the ones not locked out are forgotten (a client spraying user names). */
    static final int TRACKED = 100_000;
    private static final String UNKNOWN_USER = "pbkdf2_sha256$%d$AAAAAAAAAAAAAAAAAAAAAA==$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";

    /** Failed logins in a row, and the end of a lock-out, per user name and per client address. */
    private record Failures(int count, long lockedUntilMillis) {
    }

    private static final Map<String, Failures> FAILURES = new ConcurrentHashMap<>();

    @Override
    public void Authenticate(String user, String password) throws AuthenticationException {
        String path = System.getProperty(SETTING);
        if (path == null || user == null || password == null || password.isEmpty()) {
            throw new AuthenticationException("a user and a password are required");
        }
        String address = SessionManager.getIpAddress();
        String[] keys = address == null ? new String[] {"user " + user} : new String[] {"user " + user, "address " + address};
        long now = System.currentTimeMillis();
        for (String key : keys) {  // before the hash: a locked-out flood costs no hashing
            Failures failures = FAILURES.get(key);
            if (failures != null && failures.lockedUntilMillis() > now) {
                throw new AuthenticationException("too many failed logins: try again in "
                        + ((failures.lockedUntilMillis() - now) / 1000 + 1) + " s");
            }
        }
        boolean right;
        try {
            right = matches(password, hashOf(Path.of(path), user));
        } catch (IOException | GeneralSecurityException | IllegalArgumentException e) {
            throw new AuthenticationException("cannot check the password: " + e.getMessage());
        }
        if (FAILURES.size() > TRACKED) {  // names sprayed by a client: forget the counts, keep the lockouts
            FAILURES.entrySet().removeIf(entry -> entry.getValue().lockedUntilMillis() <= now);
        }
        if (right) {
            for (String key : keys) {
                FAILURES.remove(key);
            }
            return;
        }
        int attempts = Integer.getInteger(ATTEMPTS, 5);
        long lockout = Long.getLong(LOCKOUT, 60) * 1000;
        for (String key : keys) {
            int limit = key.startsWith("address ") ? attempts * PER_ADDRESS : attempts;
            FAILURES.compute(key, (k, before) -> {
                int count = (before == null || before.lockedUntilMillis() > 0 ? 0 : before.count()) + 1;
                return count >= limit ? new Failures(0, now + lockout) : new Failures(count, 0);
            });
        }
        throw new AuthenticationException("wrong user or password");
    }

    /** The user's hash, or for a user not in the file one that no password matches, hashed as often as theirs. */
    static String hashOf(Path file, String user) throws IOException {
        int iterations = 0;
        for (String line : Files.readAllLines(file, StandardCharsets.UTF_8)) {
            String[] entry = line.trim().split(":", 2);
            if (entry.length == 2) {
                if (entry[0].equals(user)) {
                    return entry[1];
                }
                String[] parts = entry[1].split("\\$");
                if (parts.length == 4) {
                    iterations = Math.max(iterations, Integer.parseInt(parts[1]));
                }
            }
        }
        return String.format(UNKNOWN_USER, Math.max(iterations, 1));
    }

    static boolean matches(String password, String hash) throws GeneralSecurityException {
        String[] parts = hash.split("\\$");
        if (parts.length != 4 || !parts[0].equals("pbkdf2_sha256")) {
            return false;
        }
        byte[] salt = Base64.getDecoder().decode(parts[2]);
        byte[] expected = Base64.getDecoder().decode(parts[3]);
        PBEKeySpec spec = new PBEKeySpec(password.toCharArray(), salt, Integer.parseInt(parts[1]), expected.length * 8);
        byte[] actual = SecretKeyFactory.getInstance("PBKDF2WithHmacSHA256").generateSecret(spec).getEncoded();
        return MessageDigest.isEqual(actual, expected);
    }
}
