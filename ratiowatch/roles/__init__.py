"""The roles ratiowatch splits into, each talking to the others only through Kafka topics:
``source`` (ticks in), ``engine`` (state and crossings), ``notify`` (fan-out), ``web`` (live
stream and status page). ``ratiowatch run`` runs them in one process; each also runs alone."""
