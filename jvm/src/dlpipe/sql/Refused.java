package dlpipe.sql;

/**
 * A statement that read-only SQL refuses, or a query stopped at one of serve-sql's limits. Its text is one line, and
 * so is what a client sees: the Thrift server sends {@code toString()}, which here is the message alone.
 */
public final class Refused extends SecurityException {
    /** How every refusal begins: {@code dlpipe sql} and the tests find it by these words. */
    public static final String PREFIX = "read-only SQL: the statement is refused: ";
    static final String ADMINISTRATORS = " (administrators use `dlpipe serve-sql --writable` or `dlpipe sql --writable`)";

    private Refused(String message) {
        super(message);
    }

    @Override
    public synchronized Throwable fillInStackTrace() {
        return this;  // no stack trace: nothing of it is for the client or the log
    }

    /** A statement that read-only SQL does not allow. */
    static Refused statement(String why) {
        return new Refused(PREFIX + why + ADMINISTRATORS);
    }

    /** A query stopped at a limit of the server. */
    static Refused limit(String message) {
        return new Refused(message);
    }

    @Override
    public String toString() {
        return getMessage();
    }
}
