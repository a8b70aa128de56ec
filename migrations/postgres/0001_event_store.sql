-- placeholder: the event store schema is written with the store backends
SELECT 1;
