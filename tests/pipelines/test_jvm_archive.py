"""The Spark driver maps the class archive ``make install`` builds (pipelines/jvm_archive.py)."""
import subprocess

from pyspark import SparkContext

from dlpipe.pipelines.session import class_archive


def test_the_driver_maps_the_class_archive_that_make_install_built(spark):
    archive = class_archive()
    assert archive.is_file(), f"{archive} is missing: `make install` builds it"
    info = subprocess.run(["jcmd", str(SparkContext._gateway.proc.pid), "VM.info"], capture_output=True, text=True,
                          check=True).stdout
    mapped = [line for line in info.splitlines() if line.rstrip().endswith(str(archive)) and "-p " in line]
    assert mapped, f"the driver JVM did not map {archive}: stale (another JDK or jars)? delete it and `make install`"
