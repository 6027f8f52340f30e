package dlpipe.sql;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.GeneralSecurityException;
import java.security.MessageDigest;
import java.util.Base64;

import javax.crypto.SecretKeyFactory;
import javax.crypto.spec.PBEKeySpec;
import javax.security.sasl.AuthenticationException;

import org.apache.hive.service.auth.PasswdAuthenticationProvider;

/**
 * The Thrift server's logins ({@code hive.server2.authentication=CUSTOM}) from a file of {@code user:hash} lines,
 * each hash {@code pbkdf2_sha256$<iterations>$<salt, base64>$<hash, base64>} (written by
 * {@code python -m dlpipe.pipelines.sql_auth}). The file is the Java system property {@value #SETTING}; it is read
 * at every login, so a user added or removed counts from the next one.
 */
public final class PasswordFile implements PasswdAuthenticationProvider {
    public static final String SETTING = "dlpipe.sql.passwordFile";

    @Override
    public void Authenticate(String user, String password) throws AuthenticationException {
        String path = System.getProperty(SETTING);
        if (path == null || user == null || password == null || password.isEmpty()) {
            throw new AuthenticationException("a user and a password are required");
        }
        try {
            for (String line : Files.readAllLines(Path.of(path), StandardCharsets.UTF_8)) {
                String[] entry = line.trim().split(":", 2);
                if (entry.length == 2 && entry[0].equals(user)) {
                    if (matches(password, entry[1])) {
                        return;
                    }
                    break;
                }
            }
        } catch (IOException | GeneralSecurityException | IllegalArgumentException e) {
            throw new AuthenticationException("cannot check the password: " + e.getMessage());
        }
        throw new AuthenticationException("wrong user or password");
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
