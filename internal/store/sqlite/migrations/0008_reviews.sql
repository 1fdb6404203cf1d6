-- 0008: reserved for access reviews and the owner directory (being written).
SELECT 1;
