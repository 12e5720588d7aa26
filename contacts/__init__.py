"""The example import target `contacts` (SPEC §13): a model of the application's own, which an
Upload with `target=contacts` fills with typed rows. docs/import-targets.md shows how to do the
same for any model."""
