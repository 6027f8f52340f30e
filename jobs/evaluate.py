"""spark-submit entry for the evaluate stage: `spark-submit jobs/evaluate.py --config conf/demo.yaml`."""
from dlpipe.jobs.cli import entry

if __name__ == "__main__":
    entry("evaluate")
