"""Capacity planning (`bench capacity`): how many nodes, how much memory, for a peak.

Three questions, one module each, joined by `plan`: the memory a hit ratio needs
(`memory`: the scenario's op stream through a model of memcached's memory, no server),
the rate a node sustains within the SLO (`search`: probes of short runs), and the
fleet both imply (`plan`). This stage sits above analysis (it reads probe summaries)
and below the outputs that print and render what it finds.
"""
