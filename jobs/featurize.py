"""spark-submit entry for the featurize stage: `spark-submit jobs/featurize.py --config conf/demo.yaml`."""
from dlpipe.jobs.cli import entry

if __name__ == "__main__":
    entry("featurize")
