from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from segmentation.tasks import runs_sweep_task
from tumorsite.queue import wait_idle


class Command(BaseCommand):
    help = (
        "Send again the segmentation runs whose message was lost (queued past "
        "TUMORSITE_RUN_QUEUED_DEADLINE_S) or whose worker died (running past "
        "TUMORSITE_RUN_CLAIM_DEADLINE_S), "
        "and fail those whose worker died TUMORSITE_RUN_MAX_ATTEMPTS times. The beat does this every "
        "TUMORSITE_RUNS_SWEEP_EVERY_S; run it by hand after a restart of the embedded mode, where it also "
        "runs the runs it sends before it returns."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--queued-after",
            type=float,
            metavar="SECONDS",
            help=(
                "send queued runs older than this "
                "(default: TUMORSITE_RUN_QUEUED_DEADLINE_S; 0 = every queued run)"
            ),
        )
        parser.add_argument(
            "--timeout",
            type=float,
            default=3600.0,
            metavar="SECONDS",
            help="embedded mode: how long to wait for the runs sent to finish (default: 3600)",
        )

    def handle(self, *args, **options):
        queued_after = options["queued_after"]
        if queued_after is not None and queued_after < 0:
            raise CommandError(f"--queued-after {queued_after}: give a number of seconds, 0 or more.")
        outcome = runs_sweep_task(lost_after_s=queued_after)
        if outcome["overdue"] is None:
            raise CommandError("The database cannot be read: see the warning above, then run it again.")
        if outcome["waiting"] is None:
            raise CommandError(
                f"The broker cannot be reached ({settings.CELERY_BROKER_URL}): {outcome['overdue']} overdue "
                "run(s) stay queued in the database; the beat sends them once it is back."
            )
        self.stdout.write(
            f"{outcome['overdue']} overdue run(s), {outcome['sent']} sent, {outcome['failed']} failed after "
            f"{settings.TUMORSITE_RUN_MAX_ATTEMPTS} attempts; {outcome['waiting']} message(s) were waiting."
        )
        if outcome["overdue"] and not outcome["sent"]:
            self.stdout.write(self.style.WARNING("Nothing was sent while messages wait in the queue."))
        if not settings.CELERY_BROKER_URL and outcome["sent"]:
            if not wait_idle(timeout=options["timeout"]):
                raise CommandError(f"The runs sent did not finish within {options['timeout']} s.")
            self.stdout.write("The runs sent have finished.")
