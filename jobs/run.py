"""spark-submit entry for the run stage: `spark-submit jobs/run.py --config conf/demo.yaml`."""
from dlpipe.jobs.cli import entry

if __name__ == "__main__":
    entry("run")
