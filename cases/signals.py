"""What the record tells the apps above it. The senders never import their listeners.

Each carries the case as ``case`` and is sent once the clinician's decision is committed
(``transaction.on_commit``: at once when no transaction is open):

- ``case_outline_changed(case)``: a clinician saved a corrected tumour outline (the new ground truth).
- ``case_tumour_type_chosen(case)``: a clinician confirmed or entered the tumour type.
"""

from django.dispatch import Signal

case_outline_changed = Signal()
case_tumour_type_chosen = Signal()
