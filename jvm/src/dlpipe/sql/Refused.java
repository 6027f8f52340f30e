package dlpipe.sql;

import org.apache.hive.service.cli.HiveSQLException;
import org.apache.spark.SparkThrowable;
import org.apache.spark.sql.AnalysisException;

/**
 * A statement that read-only SQL refuses, or that Spark cannot parse or analyse. Its text is one line, and so is what a client sees: the Thrift server
 * passes a {@link HiveSQLException} on as it is, and sends a client its stack trace with the message, so this one
 * has none.
 */
public final class Refused extends HiveSQLException {
    /** How every refusal begins: {@code dlpipe sql} and the tests find it by these words. */
    public static final String PREFIX = "read-only SQL: the statement is refused: ";
    private static final String ADMINISTRATORS =
            " (administrators use `dlpipe serve-sql --writable` or `dlpipe sql --writable`)";
    private static final String ACCESS_RULE_VIOLATION = "42000";

    private Refused(String message, String sqlState) {
        super(message, sqlState);
    }

    /** Throws the refusal of a statement that read-only SQL does not allow (declared to return, for {@code throw}). */
    static RuntimeException statement(String why) {
        throw Refused.<RuntimeException>unchecked(new Refused(PREFIX + why + ADMINISTRATORS, ACCESS_RULE_VIOLATION));
    }

    /** Throws Spark's error about a client's statement (it does not parse, a table is not there) in one line. */
    static RuntimeException failed(Exception error) {
        String text = error instanceof AnalysisException ? ((AnalysisException) error).getSimpleMessage()
                : String.valueOf(error.getMessage());
        String sqlState = error instanceof SparkThrowable ? ((SparkThrowable) error).getSqlState() : null;
        throw Refused.<RuntimeException>unchecked(new Refused(text.strip().lines().findFirst().orElse(text), sqlState));
    }

    /** Throws {@code t} as it is, checked or not (declared to return, for {@code throw}). */
    @SuppressWarnings("unchecked")
    static <E extends Throwable> E unchecked(Throwable t) throws E {
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
