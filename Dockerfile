# Placeholder until issue 6: see README.
FROM scratch
