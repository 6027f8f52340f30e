package dlpipe.sql;

import java.util.HashSet;
import java.util.Set;

import org.apache.spark.sql.SparkSession;
import org.apache.spark.sql.catalyst.TableIdentifier;
import org.apache.spark.sql.catalyst.analysis.FunctionRegistry;
import org.apache.spark.sql.catalyst.expressions.Expression;
import org.apache.spark.sql.catalyst.expressions.ExpressionInfo;
import org.apache.spark.sql.catalyst.expressions.SubqueryExpression;
import org.apache.spark.sql.catalyst.expressions.UserDefinedExpression;
import org.apache.spark.sql.catalyst.plans.logical.Command;
import org.apache.spark.sql.catalyst.plans.logical.LogicalPlan;
import org.apache.spark.sql.catalyst.plans.logical.Range;
import org.apache.spark.sql.catalyst.plans.logical.RebalancePartitions;
import org.apache.spark.sql.catalyst.plans.logical.RepartitionOperation;
import org.apache.spark.sql.connector.catalog.CatalogPlugin;
import org.apache.spark.sql.connector.catalog.Identifier;
import org.apache.spark.sql.execution.CommandExecutionMode;

import scala.Option;
import scala.Tuple2;
import scala.jdk.javaapi.CollectionConverters;

/**
 * Read-only SQL's check of a statement's analysed plan, before anything runs: every operator is a query operator on
 * {@link AllowList}, or the plan is a listed command; every relation names a table or view of the session catalog
 * (no file by path); every expression is Spark's own, and none is a built-in function that read-only SQL leaves out
 * (reflect and its kin) or a user-defined function. Function names are checked when the statement is parsed
 * ({@link StatementGuard}), where the names are still there.
 */
final class PlanCheck {
    private static final String EXPRESSIONS = "org.apache.spark.sql.catalyst.expressions.";
    private static final Set<String> LEFT_OUT = leftOutFunctions();

    private final SparkSession session;

    PlanCheck(SparkSession session) {
        this.session = session;
    }

    /** ``plan`` analysed in ``session``, as Spark will when it runs it; commands are not run. */
    static LogicalPlan analysed(SparkSession session, LogicalPlan plan) {
        return session.sessionState().executePlan(plan, CommandExecutionMode.SKIP()).analyzed();
    }

    void check(LogicalPlan plan) {
        String name = plan.getClass().getName();
        if (plan instanceof Command || AllowList.COMMANDS.contains(name)) {
            if (!AllowList.COMMANDS.contains(name)) {
                throw Refused.statement("it runs " + plan.nodeName() + ", which is not a query (read-only SQL "
                        + "runs queries, SHOW, DESCRIBE, EXPLAIN, USE and SET of a few settings)");
            }
            command(plan, name);
        } else if (AllowList.RELATIONS.contains(name)) {
            namedTable(plan);
        } else if (plan instanceof Range) {
            if (((Range) plan).numElements().$greater(scala.math.BigInt.apply(AllowList.RANGE_ROWS))) {
                throw Refused.statement("range() of more than " + String.format("%,d", AllowList.RANGE_ROWS) + " rows");
            }
            partitions("range()", ((Range) plan).numSlices());
        } else if (!AllowList.QUERY_OPERATORS.contains(name) && !AllowList.NAMES.contains(name)) {
            throw Refused.statement("it uses " + plan.nodeName() + ", which read-only SQL does not allow");
        }
        if (plan instanceof RepartitionOperation) {  // a REPARTITION or COALESCE hint, DISTRIBUTE BY
            partitions(plan.nodeName(), Option.apply(((RepartitionOperation) plan).numPartitions()));
        } else if (plan instanceof RebalancePartitions) {
            partitions(plan.nodeName(), ((RebalancePartitions) plan).optNumPartitions());
        }
        for (Expression expression : CollectionConverters.asJava(plan.expressions())) {
            check(expression);
        }
        for (LogicalPlan child : CollectionConverters.asJava(plan.children())) {
            check(child);
        }
    }

    /** A hint or range() may not ask for more partitions than a session may set: each is a task, and an object. */
    private static void partitions(String what, Option<?> count) {
        if (count.isDefined() && ((Number) count.get()).longValue() > AllowList.SHUFFLE_PARTITIONS) {
            throw Refused.statement(what + " of " + String.format("%,d", ((Number) count.get()).longValue())
                    + " partitions: read-only SQL allows 1 to " + AllowList.SHUFFLE_PARTITIONS);
        }
    }

    private void check(Expression expression) {
        Class<?> type = expression.getClass();
        if (!type.getName().startsWith(EXPRESSIONS) || expression instanceof UserDefinedExpression) {
            throw Refused.statement("it calls " + expression.prettyName() + ", which is not one of Spark's built-in "
                    + "functions");
        }
        if (LEFT_OUT.contains(type.getName())) {
            throw Refused.statement("it calls " + expression.prettyName() + ", which read-only SQL does not allow "
                    + "(it calls Java, reads files or parses XML)");
        }
        if (expression instanceof SubqueryExpression) {
            check(((SubqueryExpression) expression).plan());
        }
        for (Expression child : CollectionConverters.asJava(expression.children())) {
            check(child);
        }
    }

    private void command(LogicalPlan plan, String name) {
        if (name.endsWith(".SetCommand")) {
            Option<Tuple2<String, Option<String>>> pair = Reflect.call(plan, "kv");
            if (pair.isEmpty()) {
                throw Refused.statement("SET without a setting lists every setting of the server; read-only SQL "
                        + "shows and sets only " + String.join(", ", new java.util.TreeSet<>(AllowList.SETTINGS)));
            }
            String key = pair.get()._1().trim();
            if (!AllowList.setting(key)) {
                throw Refused.statement("SET " + key + ": read-only SQL shows and sets only "
                        + String.join(", ", new java.util.TreeSet<>(AllowList.SETTINGS)));
            }
            Option<String> value = pair.get()._2();
            String bad = value.isDefined() ? AllowList.badValue(key, value.get()) : null;
            if (bad != null) {
                throw Refused.statement("SET " + bad);
            }
        } else if (name.endsWith(".ExplainCommand")) {
            check(analysed(session, Reflect.call(plan, "logicalPlan")));
        } else if (name.endsWith(".DescribeQueryCommand")) {
            check(analysed(session, Reflect.call(plan, "plan")));
        } else if (name.endsWith(".DescribeDeltaHistoryCommand")) {
            Object table = Reflect.call(plan, "table");
            Option<?> catalogTable = Reflect.call(table, "catalogTable");
            if (catalogTable.isEmpty()) {
                throw Refused.statement("DESCRIBE HISTORY of a path; name a table instead");
            }
        }
    }

    /** A relation must be a table or view of the session catalog, named, not a file or folder by path. */
    private void namedTable(LogicalPlan plan) {
        String name = plan.getClass().getSimpleName();
        boolean named;
        if (name.equals("LogicalRelation")) {
            named = ((Option<?>) Reflect.call(plan, "catalogTable")).isDefined();
        } else if (name.equals("HiveTableRelation")) {
            named = true;
        } else if (name.equals("DataSourceV2Relation")) {
            Option<CatalogPlugin> catalog = Reflect.call(plan, "catalog");
            Option<Identifier> identifier = Reflect.call(plan, "identifier");
            named = catalog.isDefined() && identifier.isDefined() && inSessionCatalog(catalog.get(), identifier.get());
        } else {  // ResolvedTable
            named = inSessionCatalog(Reflect.call(plan, "catalog"), Reflect.call(plan, "identifier"));
        }
        if (!named) {
            throw Refused.statement("it reads files by path; name a table instead");
        }
    }

    private boolean inSessionCatalog(CatalogPlugin catalog, Identifier identifier) {
        if (!"spark_catalog".equals(catalog.name()) || identifier.namespace().length != 1) {
            return false;
        }
        try {
            return session.sessionState().catalog().tableExists(
                    new TableIdentifier(identifier.name(), Option.apply(identifier.namespace()[0])));
        } catch (RuntimeException e) {
            return false;
        }
    }

    /** The classes of the built-in functions that functions.txt leaves out: refused however they are reached. */
    private static Set<String> leftOutFunctions() {
        FunctionRegistry registry = FunctionRegistry.builtin();
        Set<String> classes = new HashSet<>();
        for (var function : CollectionConverters.asJava(registry.listFunction())) {
            if (!AllowList.function(function.funcName())) {
                Option<ExpressionInfo> info = registry.lookupFunction(function);
                if (info.isDefined()) {
                    classes.add(info.get().getClassName());
                }
            }
        }
        return Set.copyOf(classes);
    }
}
