"""The trainer: MovieLens genres + TMDB posters -> a versioned genre model for the worker."""
