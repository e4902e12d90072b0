"""The runtime: running one job (runner, batches, the SQL pipeline, the spool of finished calls,
the owner's signals), the long-lived worker loop that takes queued jobs, and the dry run. It may
import io, spec, store and the base; it never creates jobs (triggers do) or renders."""
