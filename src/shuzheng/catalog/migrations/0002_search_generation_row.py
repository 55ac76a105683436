from django.db import migrations


def create_row(apps, schema_editor):
    # The row every catalog change updates; created here so two first changes never race to insert it.
    apps.get_model("catalog", "SearchGeneration").objects.get_or_create(id=1, defaults={"value": 0})


class Migration(migrations.Migration):
    dependencies = [("catalog", "0001_initial")]
    operations = [migrations.RunPython(create_row, migrations.RunPython.noop)]
