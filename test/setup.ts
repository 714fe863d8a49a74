import { afterAll } from 'vitest';
import { removeTempDirs } from './helpers';

// Every test file removes the temp folders it made, whatever happened in it.
afterAll(() => removeTempDirs());
