package dlpipe.sql;

import java.security.SecureRandom;
import java.util.HexFormat;
import java.util.concurrent.Executors;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.TimeUnit;

import org.apache.spark.JobExecutionStatus;
import org.apache.spark.SparkContext;
import org.apache.spark.sql.catalyst.analysis.UnresolvedRelation;
import org.apache.spark.sql.catalyst.parser.ParseException;
import org.apache.spark.sql.catalyst.parser.ParserInterface;
import org.apache.spark.sql.catalyst.plans.logical.LogicalPlan;

import scala.jdk.javaapi.CollectionConverters;
import scala.runtime.AbstractPartialFunction;

/**
 * The limits of a statement that a Thrift client sends to {@code dlpipe serve-sql}: how long it may run, and how many
 * rows and bytes its result may have. A statement past a limit fails with one line that names the limit's setting;
 * the server goes on answering the others.
 */
final class Limits {
    /** Every limit's message has these words (the log filter finds them). */
    static final String MARK = "dlpipe serve-sql: the query was stopped: ";

    private static final ScheduledExecutorService TIMER = Executors.newSingleThreadScheduledExecutor(task -> {
        Thread thread = new Thread(task, "dlpipe-sql-query-timeout");
        thread.setDaemon(true);
        return thread;
    });

    /** The stand-in for the statement in the result check's SQL; random, so that no table can have its name. */
    private static final String STATEMENT = "dlpipe_statement_" + HexFormat.of().formatHex(new SecureRandom().generateSeed(8));

    private Limits() {
    }

    /**
     * Stop the statement that this thread runs (its Spark job group, which the Thrift server set) after
     * {@code seconds}, if a job of it still runs then: its jobs, running or still to come, are cancelled and their
     * tasks interrupted. (A statement that hangs outside Spark jobs is stopped by the Thrift server's own timeout,
     * which serve-sql sets a minute later.)
     */
    static void timeout(SparkContext spark, String group, long seconds) {
        spark.setLocalProperty("spark.job.interruptOnCancel", "true");
        TIMER.schedule(() -> {
            for (int job : spark.statusTracker().getJobIdsForGroup(group)) {
                var info = spark.statusTracker().getJobInfo(job);
                if (info.isDefined() && info.get().status() == JobExecutionStatus.RUNNING) {  // the statement runs
                    String message = MARK + "it ran for " + seconds + " s, the limit of the server (sql_server.query_timeout)";
                    Log.warn("statement " + group + ": " + message);
                    spark.cancelJobGroupAndFutureJobs(group, message);
                    return;
                }
            }
        }, seconds, TimeUnit.SECONDS);
    }

    /**
     * {@code statement} with its result checked as it is made: past {@code maxRows} rows, or {@code maxBytes} bytes
     * of its rows as text, the query fails. The first {@code maxRows + 1} rows are taken in the statement's order,
     * then counted in one partition.
     */
    static LogicalPlan checked(ParserInterface parser, LogicalPlan statement, long maxRows, long maxBytes)
            throws ParseException {
        long rows = maxRows > 0 ? maxRows : Integer.MAX_VALUE - 1;
        String bytes = maxBytes > 0
                ? "WHEN sum(octet_length(CAST(dlpipe_row AS STRING))) OVER dlpipe_so_far > " + maxBytes
                        + " THEN raise_error('" + MARK + "its result has more than " + String.format("%,d", maxBytes)
                        + " bytes as text, the limit of the server (sql_server.max_result_bytes): select fewer rows or "
                        + "columns') "
                : "";
        String sql = "SELECT dlpipe_row.* FROM ("
                + " SELECT dlpipe_row, CASE WHEN count(1) OVER dlpipe_so_far > " + rows
                + "   THEN raise_error('" + MARK + "its result has more than " + String.format("%,d", rows)
                + " rows, the limit of the server (sql_server.max_result_rows): aggregate, filter or add a LIMIT') "
                + bytes + " ELSE true END AS dlpipe_within_limits"
                + " FROM (SELECT struct(*) AS dlpipe_row FROM (SELECT * FROM " + STATEMENT + " LIMIT " + (rows + 1) + "))"
                + " WINDOW dlpipe_so_far AS (ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)"
                + ") WHERE dlpipe_within_limits";
        LogicalPlan template = parser.parsePlan(sql);
        return (LogicalPlan) template.transformUp(new AbstractPartialFunction<LogicalPlan, LogicalPlan>() {
            @Override
            public boolean isDefinedAt(LogicalPlan plan) {
                return plan instanceof UnresolvedRelation
                        && CollectionConverters.asJava(((UnresolvedRelation) plan).multipartIdentifier())
                                .equals(java.util.List.of(STATEMENT));
            }

            @Override
            public LogicalPlan apply(LogicalPlan plan) {
                return statement;
            }
        });
    }
}
