from celery import shared_task

from cases.models import Scan
from ml.inference import file_sha256


@shared_task(acks_late=True)
def scan_checksum_verify_task(scan_id: int) -> dict | None:
    """Re-hash a stored scan and compare with the recorded sha256 (storage integrity; a queue smoke test)."""
    scan = Scan.objects.filter(pk=scan_id).first()
    if scan is None:
        return None
    with scan.file.open("rb") as stored:  # the storage API: the file may not be on this machine's disk
        digest = file_sha256(stored)
    return {"scan_id": scan.pk, "sha256": digest, "ok": digest == scan.sha256}
