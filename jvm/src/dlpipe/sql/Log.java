package dlpipe.sql;

import org.apache.logging.log4j.Level;
import org.apache.logging.log4j.LogManager;
import org.apache.logging.log4j.Logger;
import org.apache.logging.log4j.core.Filter;
import org.apache.logging.log4j.core.LogEvent;
import org.apache.logging.log4j.core.LoggerContext;
import org.apache.logging.log4j.core.filter.AbstractFilter;
import org.apache.spark.sql.catalyst.CurrentUserContext$;

/**
 * The server's log: one line for each refused statement, under the logger {@value #NAME}, and none of the stack
 * traces that Spark and the Thrift server would log for it, or for a query stopped at a limit.
 */
final class Log {
    static final String NAME = "dlpipe.sql";
    private static final Logger LOG = LogManager.getLogger(NAME);
    private static boolean quiet;

    /** Run {@code check}; log a refusal in one line before it reaches a {@code client}. */
    static void refusals(boolean client, Runnable check) {
        try {
            check.run();
        } catch (Throwable e) {  // a Refused, thrown unchecked, is rethrown as it is
            if (client && e instanceof Refused) {
                String user = CurrentUserContext$.MODULE$.CURRENT_USER().get();
                LOG.warn("{}{}", user == null ? "" : "user " + user + ": ", e.getMessage());
            }
            throw e;
        }
    }

    static void warn(String message) {
        LOG.warn(message);
    }

    /** Drop every other log event that carries a refusal or a limit's message (once per application). */
    static synchronized void quietRefusals() {
        if (quiet || !(LogManager.getContext(false) instanceof LoggerContext)) {
            return;
        }
        LoggerContext context = (LoggerContext) LogManager.getContext(false);
        context.getConfiguration().getRootLogger().addFilter(new Drop());
        context.updateLoggers();
        quiet = true;
    }

    /** Refusals and limits are said once, in one line: this filter drops the traces of the same event. */
    private static final class Drop extends AbstractFilter {
        /** What Spark's Thrift server makes the DAG scheduler say when it cleans up after a failed statement. */
        private static final String CANCELLED_BEFORE = "Failed to cancel job group";

        Drop() {
            super(Filter.Result.DENY, Filter.Result.NEUTRAL);
        }

        @Override
        public Result filter(LogEvent event) {
            if (NAME.equals(event.getLoggerName()) || event.getLevel().isLessSpecificThan(Level.INFO)) {
                return Result.NEUTRAL;
            }
            String message = event.getMessage() == null ? null : event.getMessage().getFormattedMessage();
            if (ours(message) || message != null && message.startsWith(CANCELLED_BEFORE)) {
                return Result.DENY;
            }
            for (Throwable t = event.getThrown(); t != null; t = t.getCause()) {
                if (ours(t.getMessage())) {
                    return Result.DENY;
                }
            }
            return Result.NEUTRAL;
        }

        private static boolean ours(String text) {
            return text != null && (text.contains(Refused.PREFIX) || text.contains(Limits.MARK));
        }
    }

    private Log() {
    }
}
