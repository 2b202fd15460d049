export * from "./wavespeed.adapter";
