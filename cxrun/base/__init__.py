"""The base every package stands on: clock, durations, enums, errors, models, YAML reading, SQL
expression checks, secrets, owners, cron and the project's config. It imports nothing of cxrun
above it (only the standard library and a few small libraries)."""
