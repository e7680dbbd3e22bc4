from django.apps import AppConfig


class TalliesConfig(AppConfig):
    name = "mktx.tallies"
    label = "tallies"
    verbose_name = "Rollup counts"
