import hashlib

from celery import shared_task

from .models import Scan


@shared_task(acks_late=True)
def scan_checksum_verify_task(scan_id: int) -> dict | None:
    """Re-hash a stored scan and compare with the recorded sha256 (storage integrity; a queue smoke test)."""
    scan = Scan.objects.filter(pk=scan_id).first()
    if scan is None:
        return None
    digest = hashlib.sha256()
    with scan.file.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return {"scan_id": scan.pk, "sha256": digest.hexdigest(), "ok": digest.hexdigest() == scan.sha256}
