package dlpipe.sql;

import java.util.Set;

import org.apache.spark.sql.SparkSession;
import org.apache.spark.sql.SparkSessionExtensions;
import org.apache.spark.sql.catalyst.expressions.Expression;
import org.apache.spark.sql.catalyst.expressions.SubqueryExpression;
import org.apache.spark.sql.catalyst.plans.logical.Command;
import org.apache.spark.sql.catalyst.plans.logical.LogicalPlan;

import scala.Function1;
import scala.Option;
import scala.jdk.javaapi.CollectionConverters;
import scala.runtime.AbstractFunction1;
import scala.runtime.BoxedUnit;

/**
 * A Spark SQL extension that makes a Spark application read-only for SQL when its SparkConf says
 * {@code spark.dlpipe.sql.readOnly=true} (a setting of the application, which no SQL session can change with SET).
 *
 * <p>It checks every analysed plan, before anything runs: a command is refused unless it only shows or describes
 * (SHOW, DESCRIBE, EXPLAIN, SET, USE), and so is a query that calls Java methods by reflection ({@code reflect},
 * {@code java_method}). SQL over files by path ({@code SELECT * FROM text.`/etc/passwd`}, {@code delta.`/path`}) is
 * off in the application's settings ({@link #FILES}), and turning it on in a session is refused. Everything else
 * (SELECT over tables and views) runs as before.
 */
public final class ReadOnly extends AbstractFunction1<SparkSessionExtensions, BoxedUnit> {
    public static final String SETTING = "spark.dlpipe.sql.readOnly";

    /** Spark's switch for SQL over files by path ({@code text.`/etc/passwd`}, {@code delta.`/path`}): off. */
    public static final String FILES = "spark.sql.runSQLOnFiles";

    private static final Set<String> READING_COMMANDS = Set.of(
            "ExplainCommand", "SetCommand", "ResetCommand", "SetCatalogAndNamespace", "SetNamespaceCommand",
            "SetCatalogCommand");

    @Override
    public BoxedUnit apply(SparkSessionExtensions extensions) {
        extensions.injectCheckRule(new AbstractFunction1<SparkSession, Function1<LogicalPlan, BoxedUnit>>() {
            @Override
            public Function1<LogicalPlan, BoxedUnit> apply(SparkSession session) {
                boolean on = session.sparkContext().getConf().getBoolean(SETTING, false);
                return new AbstractFunction1<LogicalPlan, BoxedUnit>() {
                    @Override
                    public BoxedUnit apply(LogicalPlan plan) {
                        if (on) {
                            if (session.sessionState().conf().runSQLonFile()) {
                                refuse(FILES + " is on: SQL could read any file by path");
                            }
                            check(plan);
                        }
                        return BoxedUnit.UNIT;
                    }
                };
            }
        });
        return BoxedUnit.UNIT;
    }

    static void check(LogicalPlan plan) {
        String name = plan.getClass().getSimpleName();
        if ((plan instanceof Command && !reads(name)) || name.startsWith("InsertInto")) {
            refuse("it writes (" + name + ")");
        }
        if (name.equals("SetCommand")) {
            Option<?> pair = (Option<?>) call(plan, "kv");
            if (pair.isDefined() && FILES.equalsIgnoreCase(String.valueOf(((scala.Tuple2<?, ?>) pair.get())._1()))) {
                refuse("it would let SQL read files by path (" + FILES + ")");
            }
        }
        for (Expression expression : CollectionConverters.asJava(plan.expressions())) {
            check(expression);
        }
        for (LogicalPlan child : CollectionConverters.asJava(plan.children())) {
            check(child);
        }
    }

    static void check(Expression expression) {
        if (expression.getClass().getSimpleName().equals("CallMethodViaReflection")) {
            refuse("it calls Java methods (reflect, java_method)");
        }
        if (expression instanceof SubqueryExpression) {
            check(((SubqueryExpression) expression).plan());
        }
        for (Expression child : CollectionConverters.asJava(expression.children())) {
            check(child);
        }
    }

    static boolean reads(String command) {
        return command.startsWith("Show") || command.startsWith("Describe") || READING_COMMANDS.contains(command);
    }

    static void refuse(String why) {
        throw new SecurityException("read-only SQL: the statement is refused: " + why
                + " (administrators use `dlpipe serve-sql --writable` or `dlpipe sql --writable`)");
    }

    private static Object call(Object target, String method) {
        try {
            return target.getClass().getMethod(method).invoke(target);
        } catch (ReflectiveOperationException e) {
            throw new IllegalStateException("dlpipe.sql.ReadOnly: " + target.getClass() + " has no " + method, e);
        }
    }

}
