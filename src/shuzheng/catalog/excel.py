"""Placeholder until the workbook importer lands in this change."""


def import_workbook(actor, file):
    raise NotImplementedError


def export_workbook(actor, q=""):
    raise NotImplementedError
