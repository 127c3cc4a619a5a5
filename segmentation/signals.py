"""What segmentation tells the apps above it. The senders never import their listeners.

The run signals carry the row as ``run`` and are sent once the change is committed
(``transaction.on_commit``: at once when no transaction is open, as in a worker or a plain request):

- ``runs_queued(run_ids)``: runs were created or put back in the queue (``segmentation.tasks`` sends
  their messages; a message lost on the way is sent again by the sweep).
- ``run_finished(run)``: a run ended, done or failed.
- ``run_reviewed(run)``: a clinician validated or rejected a run's mask.
- ``model_versions_synced()``: the bundles in the models directory were registered again (sent by
  ``sync_models`` and ``train_model``). A receiver may return a sentence for the person who synced,
  e.g. that stored outputs of old weights are now stale; the command prints it as a warning.
"""

from django.dispatch import Signal

runs_queued = Signal()
run_finished = Signal()
run_reviewed = Signal()
model_versions_synced = Signal()
