"""spark-submit entry for the JDBC server: `spark-submit jobs/serve_sql.py --config conf/demo.yaml --port 10000`."""
from dlpipe.jobs.cli import entry

if __name__ == "__main__":
    entry("serve-sql")
