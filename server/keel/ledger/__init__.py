"""The git-backed ledger of approvals (docs/explanation/ledger.md)."""

from keel.ledger.git_ledger import GitLedger, content_hash, git_command, git_environment

__all__ = ["GitLedger", "content_hash", "git_command", "git_environment"]
