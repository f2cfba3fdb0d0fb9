#!/usr/bin/env python3
"""Generates the example flights data: one CSV per month of 2023, 2023-01.csv ... 2023-12.csv.

The files look like the nycflights data of the Dask and ipyparallel tutorials (departures
from New York's three airports), but they are synthetic: made up by this script from a fixed
seed, so that running it again gives the same bytes.

Columns: Year,Month,DayofMonth,DepTime,DepDelay,Origin,Dest,Distance
  DepTime   actual departure time as hhmm without leading zeros (517 is 05:17); empty when
            the flight was cancelled
  DepDelay  minutes late (negative: early); empty when the flight was cancelled
  Distance  miles between the airports

Usage:
  python3 generate.py           writes the twelve files next to this script
  python3 generate.py --check   exits 1 (naming the file) unless the files are up to date
"""

import io
import random
import sys
from pathlib import Path

SEED = 20230101
YEAR = 2023
HEADER = "Year,Month,DayofMonth,DepTime,DepDelay,Origin,Dest,Distance"
DAYS_IN_MONTH = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31]

# Miles from each origin; LaGuardia's perimeter rule keeps it off the long routes.
DISTANCES = {
    "ATL": {"EWR": 746, "JFK": 760, "LGA": 762},
    "BOS": {"EWR": 200, "JFK": 187, "LGA": 184},
    "CLT": {"EWR": 529, "JFK": 541, "LGA": 544},
    "DEN": {"EWR": 1605, "JFK": 1626, "LGA": 1620},
    "DFW": {"EWR": 1372, "JFK": 1391, "LGA": 1389},
    "FLL": {"EWR": 1065, "JFK": 1069, "LGA": 1076},
    "LAX": {"EWR": 2454, "JFK": 2475},
    "MCO": {"EWR": 937, "JFK": 944, "LGA": 950},
    "MIA": {"EWR": 1085, "JFK": 1089, "LGA": 1096},
    "ORD": {"EWR": 719, "JFK": 740, "LGA": 733},
    "SEA": {"EWR": 2402, "JFK": 2422},
    "SFO": {"EWR": 2565, "JFK": 2586},
}
ROUTES = [(origin, dest) for dest, miles in sorted(DISTANCES.items()) for origin in sorted(miles)]

# Months with summer storms and holiday traffic run later than the others.
LATENESS = [1.2, 0.9, 0.9, 1.0, 1.0, 1.3, 1.4, 1.2, 0.8, 0.8, 0.9, 1.4]


def delay_minutes(rng, lateness):
    """One departure delay in minutes: mostly early or on time, a long tail of late ones."""
    roll = rng.random()
    if roll < 0.55:
        return rng.randint(-15, 0)
    if roll < 0.90:
        return 1 + int(rng.expovariate(1.0 / (18.0 * lateness)))
    return min(1 + int(rng.expovariate(1.0 / (75.0 * lateness))), 900)


def hhmm(minutes):
    """Minutes after midnight as the hhmm integer of the data set (24:00 is written 2400)."""
    minutes %= 24 * 60
    if minutes == 0:
        return 2400
    return (minutes // 60) * 100 + minutes % 60


def month_csv(rng, month):
    """The text of one month's file."""
    out = io.StringIO()
    out.write(HEADER + "\n")
    lateness = LATENESS[month - 1]
    for day in range(1, DAYS_IN_MONTH[month - 1] + 1):
        flights = rng.randint(24, 40)
        # Scheduled departures between 05:00 and 23:00, in order.
        scheduled = sorted(rng.randint(5 * 60, 23 * 60) for _ in range(flights))
        for planned in scheduled:
            origin, dest = rng.choice(ROUTES)
            distance = DISTANCES[dest][origin]
            if rng.random() < 0.015:
                dep_time, dep_delay = "", ""
            else:
                delay = delay_minutes(rng, lateness)
                dep_time, dep_delay = str(hhmm(planned + delay)), str(delay)
            out.write(f"{YEAR},{month},{day},{dep_time},{dep_delay},{origin},{dest},{distance}\n")
    return out.getvalue()


def all_files():
    """(file name, text) for the twelve months, from the one seeded generator."""
    rng = random.Random(SEED)
    return [(f"{YEAR}-{month:02d}.csv", month_csv(rng, month)) for month in range(1, 13)]


def main(argv):
    here = Path(__file__).resolve().parent
    check = argv[1:] == ["--check"]
    if argv[1:] and not check:
        print(__doc__, file=sys.stderr)
        return 2
    for name, text in all_files():
        path = here / name
        if check:
            if not path.is_file() or path.read_text(encoding="ascii") != text:
                print(f"{path} is not what generate.py writes; run it again", file=sys.stderr)
                return 1
        else:
            path.write_text(text, encoding="ascii", newline="\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
