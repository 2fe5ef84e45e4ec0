"""The impasto server: settings, socket loop, job queue, worker, style library, target cache."""
