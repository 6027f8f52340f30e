"""spark-submit entry for the generate stage: `spark-submit jobs/generate.py --config conf/demo.yaml`."""
from dlpipe.jobs.cli import entry

if __name__ == "__main__":
    entry("generate")
