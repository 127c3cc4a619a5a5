from django.dispatch import Signal

# Sent after cases_save() bulk-inserts cases (imports), which sends no post_save per row.
# Receivers get ``case_ids: list[int]``; the signal is sent once the transaction has committed.
cases_imported = Signal()
