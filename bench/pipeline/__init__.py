"""Pipeline stages and reporting: host measurement (profile), training, evaluation,
statistics, figures, the papers-vs-suite claims and README refresh. Each DVC stage runs
a notebook that calls into these modules."""
