"""Running one experiment: config, Ray and Flower, the methods driven, signals, timings."""
