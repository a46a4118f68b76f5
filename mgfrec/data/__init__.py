"""Data: sources that read raw logs, the R2ec protocol that turns them into samples, the prepared folder."""
