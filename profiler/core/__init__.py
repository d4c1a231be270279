"""Values at the bottom: records, errors, units and formatting, statistics, the audio axis."""
