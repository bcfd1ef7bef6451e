from typing import Any

from django.db import migrations


MOVED = {
    "ledger": ["batch", "block", "chainevent", "ingestcursor", "ingestincident", "operator", "operatorstake"],
    "intake": ["batchrefusal", "signature"],
    "liveness": ["operatorliveness", "operatorstatechange"],
    "progress": ["batchprogress", "batchprogresschange"],
    "alerts": ["alert", "alertwatch", "webhookattempt", "webhookdelivery", "webhookendpoint"],
}


def _relabel(apps: Any, moves: list[tuple[str, str, str]]) -> None:
    content_type = apps.get_model("contenttypes", "ContentType")
    for old, new, model in moves:
        # A content type already made under the new label (none on an existing database) wins.
        if not content_type.objects.filter(app_label=new, model=model).exists():
            content_type.objects.filter(app_label=old, model=model).update(app_label=new)


def content_types_follow(apps: Any, schema_editor: Any) -> None:
    """Permissions and admin history follow the models to their apps (no duplicate content types)."""
    _relabel(apps, [("monitoring", app, model) for app, models in MOVED.items() for model in models])


def content_types_return(apps: Any, schema_editor: Any) -> None:
    _relabel(apps, [(app, "monitoring", model) for app, models in MOVED.items() for model in models])


class Migration(migrations.Migration):
    dependencies = [
        ("contenttypes", "0002_remove_content_type_name"),
        ("monitoring", "0005_batchrefusal"),
        ("recovery", "0003_signature_in_intake"),
        ("ledger", "0001_initial"),
        ("intake", "0001_initial"),
        ("liveness", "0001_initial"),
        ("progress", "0001_initial"),
        ("alerts", "0001_initial"),
    ]

    # Every model moved to its stage app; the tables stay where they are.
    # State only: the tables already exist (Meta.db_table keeps their names), so no SQL runs.
    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.RemoveField(
                    model_name="webhookdelivery",
                    name="alert",
                ),
                migrations.DeleteModel(
                    name="AlertWatch",
                ),
                migrations.RemoveField(
                    model_name="batchprogress",
                    name="batch",
                ),
                migrations.DeleteModel(
                    name="BatchProgressChange",
                ),
                migrations.DeleteModel(
                    name="BatchRefusal",
                ),
                migrations.DeleteModel(
                    name="Block",
                ),
                migrations.RemoveField(
                    model_name="operatorstake",
                    name="event",
                ),
                migrations.DeleteModel(
                    name="IngestCursor",
                ),
                migrations.DeleteModel(
                    name="IngestIncident",
                ),
                migrations.DeleteModel(
                    name="Operator",
                ),
                migrations.DeleteModel(
                    name="OperatorLiveness",
                ),
                migrations.DeleteModel(
                    name="OperatorStateChange",
                ),
                migrations.DeleteModel(
                    name="Signature",
                ),
                migrations.RemoveField(
                    model_name="webhookattempt",
                    name="delivery",
                ),
                migrations.RemoveField(
                    model_name="webhookdelivery",
                    name="endpoint",
                ),
                migrations.DeleteModel(
                    name="Alert",
                ),
                migrations.DeleteModel(
                    name="Batch",
                ),
                migrations.DeleteModel(
                    name="BatchProgress",
                ),
                migrations.DeleteModel(
                    name="ChainEvent",
                ),
                migrations.DeleteModel(
                    name="OperatorStake",
                ),
                migrations.DeleteModel(
                    name="WebhookAttempt",
                ),
                migrations.DeleteModel(
                    name="WebhookDelivery",
                ),
                migrations.DeleteModel(
                    name="WebhookEndpoint",
                ),
            ],
        ),
        migrations.RunPython(content_types_follow, content_types_return),
    ]
