module shopstream/ingest

go 1.24
