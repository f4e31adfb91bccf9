"""Content filters: a policy of rules (and an optional external classifier) run on prompts at submit."""
