"""spark-submit entry for the hyperparameter scan: `spark-submit jobs/tune.py --config conf/demo.yaml`."""
from dlpipe.jobs.cli import entry

if __name__ == "__main__":
    entry("tune")
