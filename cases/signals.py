"""What the record tells the apps above it. The senders never import their listeners.

Each is sent right after the clinician's decision is saved, with the case as ``case``:

- ``case_outline_changed(case)``: a clinician saved a corrected tumour outline (the new ground truth).
- ``case_tumour_type_chosen(case)``: a clinician confirmed or entered the tumour type.
"""

from django.dispatch import Signal

case_outline_changed = Signal()
case_tumour_type_chosen = Signal()
