package dlpipe.sql;

import org.apache.spark.SparkConf;
import org.apache.spark.sql.SparkSession;
import org.apache.spark.sql.SparkSessionExtensions;
import org.apache.spark.sql.catalyst.parser.ParserInterface;

import scala.runtime.AbstractFunction1;
import scala.runtime.AbstractFunction2;
import scala.runtime.BoxedUnit;

/**
 * dlpipe's Spark SQL extension, for {@code dlpipe sql} and {@code dlpipe serve-sql}. Its settings are the Spark
 * application's, which no SQL session can change:
 * <ul>
 * <li>{@value #READ_ONLY}: read-only SQL, an allow-list ({@link AllowList}): a statement runs only if it is a query
 * over the session catalog's tables and views, with built-in functions on the list, or a listed command (SHOW,
 * DESCRIBE, EXPLAIN, USE, SET of a few settings). The session's settings must be the server's, but for those few.
 * <li>{@value #TIMEOUT}, {@value #MAX_ROWS}, {@value #MAX_BYTES}: limits of each statement a Thrift client sends.
 * </ul>
 */
public final class Guard extends AbstractFunction1<SparkSessionExtensions, BoxedUnit> {
    public static final String READ_ONLY = "spark.dlpipe.sql.readOnly";
    public static final String TIMEOUT = "spark.dlpipe.sql.queryTimeout";
    public static final String MAX_ROWS = "spark.dlpipe.sql.maxResultRows";
    public static final String MAX_BYTES = "spark.dlpipe.sql.maxResultBytes";

    /** What a session's guard reads from the application's settings. */
    record Settings(boolean readOnly, long timeoutSeconds, long maxRows, long maxBytes, boolean fair) {
        static Settings of(SparkConf conf) {
            return new Settings(conf.getBoolean(READ_ONLY, false), conf.getLong(TIMEOUT, 0), conf.getLong(MAX_ROWS, 0),
                    conf.getLong(MAX_BYTES, 0), "FAIR".equalsIgnoreCase(conf.get("spark.scheduler.mode", "FIFO")));
        }

        boolean any() {
            return readOnly || timeoutSeconds > 0 || maxRows > 0 || maxBytes > 0;
        }
    }

    @Override
    public BoxedUnit apply(SparkSessionExtensions extensions) {
        extensions.injectParser(new AbstractFunction2<SparkSession, ParserInterface, ParserInterface>() {
            @Override
            public ParserInterface apply(SparkSession session, ParserInterface parser) {
                Settings settings = Settings.of(session.sparkContext().getConf());
                if (!settings.any()) {
                    return parser;
                }
                Log.quietRefusals();
                return new StatementGuard(session, parser, settings);
            }
        });
        return BoxedUnit.UNIT;
    }
}
