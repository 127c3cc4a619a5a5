"""The audited events: one name per kind of action, and the auditlog action it counts as."""

from auditlog.models import AbstractLogEntry

Action = AbstractLogEntry.Action

# name -> (auditlog action, description)
EVENTS: dict[str, tuple[int, str]] = {
    "case.viewed": (Action.ACCESS, "a case's page or API detail was opened"),
    "image.downloaded": (Action.ACCESS, "a scan's full image was downloaded"),
    "mask.downloaded": (Action.ACCESS, "a mask (AI, ground truth or an earlier version) was downloaded"),
    "report.viewed": (Action.ACCESS, "a case's printable report was opened"),
    "case.uploaded": (Action.CREATE, "a scan was uploaded as a new case"),
    "mask.corrected": (Action.UPDATE, "a clinician saved a corrected outline (a new mask version)"),
    "mask.restored": (Action.UPDATE, "a clinician restored an earlier mask version (a new version)"),
    "run.validated": (Action.UPDATE, "a reviewer validated an AI mask"),
    "run.rejected": (Action.UPDATE, "a reviewer rejected an AI mask"),
    "type.recorded": (Action.UPDATE, "a clinician recorded a case's tumour type"),
    "diagnosis.added": (Action.UPDATE, "a diagnosis was linked to a case"),
    "diagnosis.removed": (Action.UPDATE, "a diagnosis was unlinked from a case"),
    "catalogue.merged": (Action.UPDATE, "a catalogue entry was merged into another"),
    "catalogue.renamed": (Action.UPDATE, "a catalogue entry was renamed"),
    "catalogue.retired": (Action.UPDATE, "a catalogue entry was retired"),
    "catalogue.restored": (Action.UPDATE, "a retired catalogue entry was put back in use"),
    "model.changed": (Action.UPDATE, "a model version was added, replaced, activated or deactivated"),
    "auth.signed_in": (Action.ACCESS, "a user signed in (page or API token)"),
    "auth.sign_in_failed": (Action.ACCESS, "a sign-in was refused (wrong password or locked out)"),
}
