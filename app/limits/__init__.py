"""Per-key limits: requests per minute, concurrent jobs, and a monthly quota of video seconds."""
