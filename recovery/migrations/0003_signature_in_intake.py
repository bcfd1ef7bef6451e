import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("intake", "0001_initial"),
        ("recovery", "0002_catchupask"),
    ]

    # The signature model moved to intake (same table): the foreign key now names it there.
    # State only: the tables already exist (Meta.db_table keeps their names), so no SQL runs.
    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name="signaturedelivery",
                    name="signature",
                    field=models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="deliveries",
                        to="intake.signature",
                    ),
                ),
            ],
        ),
    ]
