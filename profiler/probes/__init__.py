"""The library behind the command-line tools: bench, gate-eval, interleave, frontier probe, doctor, trace, scale-out bench."""
