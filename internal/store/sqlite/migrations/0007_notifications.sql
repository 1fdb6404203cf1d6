-- 0007: reserved for expiry notifications (being written).
SELECT 1;
