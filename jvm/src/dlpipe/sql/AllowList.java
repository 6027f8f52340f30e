package dlpipe.sql;

import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStream;
import java.io.InputStreamReader;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.util.HashSet;
import java.util.Locale;
import java.util.Set;

/**
 * What read-only SQL allows, by name. Anything not listed here is refused: a plan operator, a command or a function
 * that a newer Spark adds stays refused until it is listed.
 */
final class AllowList {
    private static final String LOGICAL = "org.apache.spark.sql.catalyst.plans.logical.";
    private static final String COMMAND = "org.apache.spark.sql.execution.command.";
    private static final String ANALYSIS = "org.apache.spark.sql.catalyst.analysis.";
    private static final String DELTA = "org.apache.spark.sql.delta.commands.";

    /** The operators of a query. */
    static final Set<String> QUERY_OPERATORS = Set.of(
            LOGICAL + "Project", LOGICAL + "Filter", LOGICAL + "Join", LOGICAL + "LateralJoin",
            LOGICAL + "Aggregate", LOGICAL + "Window", LOGICAL + "Expand", LOGICAL + "Generate",
            LOGICAL + "Union", LOGICAL + "Intersect", LOGICAL + "Except", LOGICAL + "Distinct", LOGICAL + "Deduplicate",
            LOGICAL + "Sort", LOGICAL + "GlobalLimit", LOGICAL + "LocalLimit", LOGICAL + "Offset", LOGICAL + "Tail",
            LOGICAL + "Sample", LOGICAL + "SubqueryAlias", LOGICAL + "View",
            LOGICAL + "WithCTE", LOGICAL + "CTERelationDef", LOGICAL + "CTERelationRef",
            LOGICAL + "Repartition", LOGICAL + "RepartitionByExpression", LOGICAL + "RebalancePartitions",
            LOGICAL + "ResolvedHint", LOGICAL + "LocalRelation", LOGICAL + "OneRowRelation", LOGICAL + "Range",
            "org.apache.spark.sql.catalyst.expressions.PipeOperator");  // SQL pipe syntax: FROM t |> WHERE ...

    /** Relations: each must name a table or view of the session catalog (checked by {@link PlanCheck}). */
    static final Set<String> RELATIONS = Set.of(
            "org.apache.spark.sql.execution.datasources.LogicalRelation",
            "org.apache.spark.sql.execution.datasources.v2.DataSourceV2Relation",
            "org.apache.spark.sql.catalyst.catalog.HiveTableRelation",
            ANALYSIS + "ResolvedTable");

    /** What the commands below refer to, besides tables: a database, a view by name. */
    static final Set<String> NAMES = Set.of(ANALYSIS + "ResolvedNamespace", ANALYSIS + "ResolvedPersistentView");

    /** Commands that only show or describe. The query of an EXPLAIN or DESCRIBE QUERY is checked as any other. */
    static final Set<String> COMMANDS = Set.of(
            LOGICAL + "ShowTables", LOGICAL + "ShowTablesExtended", LOGICAL + "ShowNamespaces",
            LOGICAL + "ShowTableProperties", LOGICAL + "ShowColumns", LOGICAL + "ShowViews", LOGICAL + "ShowFunctions",
            LOGICAL + "ShowPartitions", LOGICAL + "ShowCreateTable", LOGICAL + "DescribeRelation",
            LOGICAL + "DescribeColumn", COMMAND + "DescribeRelationJsonCommand", COMMAND + "ShowCreateTableCommand",
            LOGICAL + "DescribeNamespace", LOGICAL + "DescribeFunction", LOGICAL + "SetCatalogAndNamespace",
            COMMAND + "ShowTablesCommand", COMMAND + "ShowViewsCommand", COMMAND + "ShowFunctionsCommand",
            COMMAND + "ShowColumnsCommand", COMMAND + "ShowCatalogsCommand", COMMAND + "ShowCurrentNamespaceCommand",
            COMMAND + "ShowTablePropertiesCommand", COMMAND + "ShowPartitionsCommand",
            COMMAND + "DescribeTableCommand", COMMAND + "DescribeColumnCommand", COMMAND + "DescribeDatabaseCommand",
            COMMAND + "DescribeFunctionCommand", COMMAND + "DescribeQueryCommand", COMMAND + "ExplainCommand",
            COMMAND + "SetCommand", COMMAND + "ResetCommand", COMMAND + "SetNamespaceCommand",
            DELTA + "DescribeDeltaHistoryCommand", DELTA + "DescribeDeltaDetailCommand",
            DELTA + "ShowDeltaTableColumnsCommand");

    /** Session settings that SET may change; every other setting stays as the server started. */
    static final Set<String> SETTINGS = Set.of(
            "spark.sql.session.timezone", "spark.sql.ansi.enabled", "spark.sql.shuffle.partitions",
            "spark.sql.adaptive.enabled");

    /** Settings that the Thrift server, Delta, dlpipe itself or a Hive JDBC client when it connects set in a session
     *  (SET of them is refused). */
    static final Set<String> SERVER_SETTINGS = Set.of("hive.server2.thrift.resultset.default.fetch.size",
            "spark.sql.datetime.java8api.enabled", "spark.sql.thriftserver.scheduler.pool",
            "spark.sql.parquet.fieldid.read.enabled", "spark.sql.parquet.fieldid.write.enabled",
            "spark.sql.binaryoutputstyle");

    /** The most rows {@code range()} may make. */
    static final long RANGE_ROWS = 1_000_000_000L;

    /** Spark's built-in functions that read-only SQL allows, by name (functions.txt). */
    static final Set<String> FUNCTIONS = load("functions.txt");

    /** The most shuffle partitions a session may ask for: far more would fill the server's memory with tasks. */
    static final int SHUFFLE_PARTITIONS = 1000;

    static boolean setting(String key) {
        return SETTINGS.contains(key.toLowerCase(Locale.ROOT));
    }

    /** Why {@code value} is not allowed for the listed setting {@code key}, or null. */
    static String badValue(String key, String value) {
        if (key.equalsIgnoreCase("spark.sql.shuffle.partitions")) {
            try {
                int partitions = Integer.parseInt(value.trim());
                if (partitions >= 1 && partitions <= SHUFFLE_PARTITIONS) {
                    return null;
                }
            } catch (NumberFormatException e) {
                // refused below
            }
            return key + "=" + value + ": read-only SQL allows 1 to " + SHUFFLE_PARTITIONS;
        }
        return null;
    }

    static boolean function(String name) {
        return FUNCTIONS.contains(name.toLowerCase(Locale.ROOT));
    }

    private static Set<String> load(String resource) {
        Set<String> names = new HashSet<>();
        try (InputStream in = AllowList.class.getResourceAsStream(resource)) {
            if (in == null) {
                throw new IllegalStateException("dlpipe-sql.jar lacks dlpipe/sql/" + resource + ": run make install");
            }
            BufferedReader lines = new BufferedReader(new InputStreamReader(in, StandardCharsets.UTF_8));
            for (String line = lines.readLine(); line != null; line = lines.readLine()) {
                if (!line.isBlank() && !line.startsWith("#")) {
                    names.add(line.strip().toLowerCase(Locale.ROOT));
                }
            }
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
        return Set.copyOf(names);
    }

    private AllowList() {
    }
}
