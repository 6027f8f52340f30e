package dlpipe.sql;

import java.util.Locale;
import java.util.Map;
import java.util.Objects;
import java.util.concurrent.atomic.AtomicLong;

import org.apache.spark.SparkConf;
import org.apache.spark.SparkContext;
import org.apache.spark.sql.AnalysisException;
import org.apache.spark.internal.config.ConfigEntry;
import org.apache.spark.sql.SparkSession;
import org.apache.spark.sql.catalyst.FunctionIdentifier;
import org.apache.spark.sql.catalyst.TableIdentifier;
import org.apache.spark.sql.catalyst.analysis.ExpressionWithUnresolvedIdentifier;
import org.apache.spark.sql.catalyst.analysis.PlanWithUnresolvedIdentifier;
import org.apache.spark.sql.catalyst.analysis.UnresolvedFunction;
import org.apache.spark.sql.catalyst.analysis.UnresolvedGenerator;
import org.apache.spark.sql.catalyst.analysis.UnresolvedTableValuedFunction;
import org.apache.spark.sql.catalyst.expressions.Expression;
import org.apache.spark.sql.catalyst.expressions.SubqueryExpression;
import org.apache.spark.sql.catalyst.parser.ParseException;
import org.apache.spark.sql.catalyst.parser.ParserInterface;
import org.apache.spark.sql.catalyst.plans.logical.Command;
import org.apache.spark.sql.catalyst.plans.logical.LogicalPlan;
import org.apache.spark.sql.catalyst.trees.TreeNode;
import org.apache.spark.sql.internal.SQLConf$;
import org.apache.spark.sql.types.DataType;
import org.apache.spark.sql.types.StructType;

import scala.collection.immutable.Seq;
import scala.jdk.javaapi.CollectionConverters;

/**
 * The parser of a guarded session: Spark's (with Delta's) behind checks that must come before analysis.
 * <ul>
 * <li>Read-only: the session's settings are the server's but for {@link AllowList#SETTINGS} (a client can set
 * others when it connects, where no SET is parsed; a catalog declared that way would run statements on its
 * database while the query is analysed), every function the statement names is on the list, and the statement's
 * analysed plan passes {@link PlanCheck}. The check is here, on the client's statement, and not a rule of every
 * analysis: Spark and Delta analyse queries of their own while they run a statement (a Delta log is read by path).
 * <li>A Thrift client's statement runs in its session's own pool of Spark's FAIR scheduler, is stopped at the
 * timeout, and a query's result is checked against the row and byte limits ({@link Limits}).
 * </ul>
 */
final class StatementGuard implements ParserInterface {
    private static final AtomicLong SESSIONS = new AtomicLong();
    private static final String POOL = "spark.sql.thriftserver.scheduler.pool";

    private final SparkSession session;
    private final ParserInterface parser;
    private final Guard.Settings settings;
    private final String pool = "sql-session-" + SESSIONS.incrementAndGet();
    private final PlanCheck check;

    StatementGuard(SparkSession session, ParserInterface parser, Guard.Settings settings) {
        this.session = session;
        this.parser = parser;
        this.settings = settings;
        this.check = new PlanCheck(session);
    }

    @Override
    public LogicalPlan parsePlan(String sql) throws ParseException {
        SparkContext spark = session.sparkContext();
        String group = spark.getLocalProperty("spark.jobGroup.id");  // a Thrift client's statement
        if (group != null && settings.fair()) {
            session.sessionState().conf().setConfString(POOL, pool);  // also for the jobs of later fetches
            spark.setLocalProperty("spark.scheduler.pool", pool);
        }
        boolean client = group != null;  // a refusal is logged for a client; dlpipe sql prints it to its user
        LogicalPlan plan;
        try {
            if (settings.readOnly()) {
                Log.refusals(client, this::settingsAreTheServers);
            }
            plan = parser.parsePlan(sql);
            if (settings.readOnly()) {
                Log.refusals(client, () -> {
                    functionsOnTheList(plan);
                    check.check(PlanCheck.analysed(session, plan));
                });
            }
        } catch (AnalysisException e) {  // a ParseException too
            if (!client) {
                throw Refused.<RuntimeException>unchecked(e);
            }
            throw Refused.failed(e);  // its first line: not the plan, the statement and its pointer after it
        }
        if (group == null) {
            return plan;
        }
        if (settings.timeoutSeconds() > 0) {
            Limits.timeout(spark, group, settings.timeoutSeconds());
        }
        if ((settings.maxRows() > 0 || settings.maxBytes() > 0) && isQuery(plan)) {
            return Limits.checked(parser, plan, settings.maxRows(), settings.maxBytes());
        }
        return plan;
    }

    @Override
    public LogicalPlan parseQuery(String sql) throws ParseException {  // a view's text, among others
        LogicalPlan plan = parser.parseQuery(sql);
        if (settings.readOnly()) {
            Log.refusals(false, () -> functionsOnTheList(plan));
        }
        return plan;
    }

    /**
     * The server's settings: those of the application's own session when it parsed its first statement (dlpipe's
     * check that the guard is on, before the Thrift server starts), for every key it had; else the application's
     * Spark settings, else Spark's default. (A Hive setting that the server's JVM has as a system property, such as
     * its login checker, comes into every client session as it is.)
     */
    private static volatile Map<String, String> server;

    private void settingsAreTheServers() {
        Map<String, String> current = CollectionConverters.asJava(session.sessionState().conf().getAllConfs());
        if (server == null) {
            synchronized (StatementGuard.class) {
                if (server == null) {
                    server = Map.copyOf(current);
                    return;
                }
            }
        }
        SparkConf application = session.sparkContext().getConf();
        for (Map.Entry<String, String> setting : current.entrySet()) {
            String key = setting.getKey();
            String lower = key.toLowerCase(Locale.ROOT);
            if (AllowList.SETTINGS.contains(lower)) {
                String bad = AllowList.badValue(key, setting.getValue());
                if (bad != null) {
                    throw Refused.statement("the session's setting " + bad);
                }
                continue;
            }
            if (AllowList.SERVER_SETTINGS.contains(lower)) {
                continue;
            }
            String expected = server.containsKey(key) ? server.get(key) : application.getOption(key).getOrElse(() -> {
                ConfigEntry<?> entry = SQLConf$.MODULE$.getConfigEntry(key);
                return entry == null ? null : entry.defaultValueString();
            });
            if (!Objects.equals(setting.getValue(), expected)
                    && !Objects.equals(setting.getValue(), System.getProperty(key))) {  // the server JVM's own
                throw Refused.statement("the session's setting " + key + " is not the server's (a client can set "
                        + "it when it connects); read-only SQL sets only "
                        + String.join(", ", new java.util.TreeSet<>(AllowList.SETTINGS)));
            }
        }
    }

    private static void functionsOnTheList(TreeNode<?> node) {
        if (node instanceof ExpressionWithUnresolvedIdentifier || node instanceof PlanWithUnresolvedIdentifier) {
            // the name is an expression, known only when the statement is analysed, which evaluates it
            throw Refused.statement("IDENTIFIER(...) names a table or function only when the statement is analysed; "
                    + "name it directly");
        }
        if (node instanceof UnresolvedFunction) {
            builtIn(CollectionConverters.asJava(((UnresolvedFunction) node).nameParts()));
        } else if (node instanceof UnresolvedTableValuedFunction) {
            builtIn(CollectionConverters.asJava(((UnresolvedTableValuedFunction) node).name()));
        } else if (node instanceof UnresolvedGenerator) {
            FunctionIdentifier name = ((UnresolvedGenerator) node).name();
            builtIn(name.database().isDefined() ? java.util.List.of(name.database().get(), name.funcName())
                    : java.util.List.of(name.funcName()));
        }
        if (node instanceof LogicalPlan) {
            for (Expression expression : CollectionConverters.asJava(((LogicalPlan) node).expressions())) {
                functionsOnTheList(expression);
            }
        }
        if (node instanceof SubqueryExpression) {
            functionsOnTheList(((SubqueryExpression) node).plan());
        }
        for (Object child : CollectionConverters.asJava((Seq<?>) node.children())) {
            functionsOnTheList((TreeNode<?>) child);
        }
        for (TreeNode<?> inner : CollectionConverters.asJava(node.innerChildren())) {
            functionsOnTheList(inner);
        }
    }

    /** A function named by the statement: a built-in on the list, unqualified or as builtin.NAME. */
    private static void builtIn(java.util.List<String> parts) {
        String name = parts.get(parts.size() - 1);
        String qualifier = String.join(".", parts.subList(0, parts.size() - 1)).toLowerCase(Locale.ROOT);
        boolean builtinNamespace = qualifier.isEmpty() || qualifier.equals("builtin") || qualifier.equals("system.builtin");
        if (!builtinNamespace || !AllowList.function(name)) {
            throw Refused.statement("it calls " + String.join(".", parts) + ", which is not a built-in function that "
                    + "read-only SQL allows");
        }
    }

    /** A query, whose result a client fetches: not a command, and no INSERT. */
    private static boolean isQuery(LogicalPlan plan) {
        String name = plan.getClass().getSimpleName();
        return !(plan instanceof Command) && !name.contains("Insert") && !name.contains("Statement")
                && !name.contains("Command");
    }

    @Override
    public Expression parseExpression(String sql) throws ParseException {
        return parser.parseExpression(sql);
    }

    @Override
    public TableIdentifier parseTableIdentifier(String sql) throws ParseException {
        return parser.parseTableIdentifier(sql);
    }

    @Override
    public FunctionIdentifier parseFunctionIdentifier(String sql) throws ParseException {
        return parser.parseFunctionIdentifier(sql);
    }

    @Override
    public Seq<String> parseMultipartIdentifier(String sql) throws ParseException {
        return parser.parseMultipartIdentifier(sql);
    }

    @Override
    public StructType parseRoutineParam(String sql) throws ParseException {
        return parser.parseRoutineParam(sql);
    }

    @Override
    public StructType parseTableSchema(String sql) throws ParseException {
        return parser.parseTableSchema(sql);
    }

    @Override
    public DataType parseDataType(String sql) throws ParseException {
        return parser.parseDataType(sql);
    }
}
