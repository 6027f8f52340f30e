package dlpipe.sql;

import org.apache.hive.service.cli.HiveSQLException;

/**
 * A statement that read-only SQL refuses. Its text is one line, and so is what a client sees: the Thrift server
 * passes a {@link HiveSQLException} on as it is, and sends a client its stack trace with the message, so this one
 * has none.
 */
public final class Refused extends HiveSQLException {
    /** How every refusal begins: {@code dlpipe sql} and the tests find it by these words. */
    public static final String PREFIX = "read-only SQL: the statement is refused: ";
    private static final String ADMINISTRATORS =
            " (administrators use `dlpipe serve-sql --writable` or `dlpipe sql --writable`)";
    private static final String ACCESS_RULE_VIOLATION = "42000";

    private Refused(String message) {
        super(message, ACCESS_RULE_VIOLATION);
    }

    /** Throws the refusal of a statement that read-only SQL does not allow (declared to return, for {@code throw}). */
    static RuntimeException statement(String why) {
        throw Refused.<RuntimeException>unchecked(new Refused(PREFIX + why + ADMINISTRATORS));
    }

    @SuppressWarnings("unchecked")
    private static <E extends Throwable> E unchecked(Throwable t) throws E {
        throw (E) t;
    }

    @Override
    public String toString() {
        return getMessage();
    }

    @Override
    public synchronized Throwable fillInStackTrace() {
        return this;  // no stack trace: nothing of it is for the client or the log
    }
}
