"""spark-submit entry for the infer stage: `spark-submit jobs/infer.py --config conf/demo.yaml`."""
from dlpipe.jobs.cli import entry

if __name__ == "__main__":
    entry("infer")
