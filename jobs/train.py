"""spark-submit entry for the train stage: `spark-submit jobs/train.py --config conf/demo.yaml`."""
from dlpipe.jobs.cli import entry

if __name__ == "__main__":
    entry("train")
